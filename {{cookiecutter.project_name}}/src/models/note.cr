# The example table. Hasura tracks it too (db/hasura/metadata).
class Note < BaseModel
  table do
    column title : String
    column body : String
    column published : Bool = false
  end
end
