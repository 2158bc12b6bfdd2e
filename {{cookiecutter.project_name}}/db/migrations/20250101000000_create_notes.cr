# Creates the example table that both Lucky (Note model) and Hasura
# (db/hasura/metadata) use. Lucky owns every migration in this project.
class CreateNotes::V20250101000000 < Avram::Migrator::Migration::V1
  def migrate
    create table_for(Note) do
      primary_key id : Int64
      add_timestamps
      add title : String
      add body : String, default: ""
      add published : Bool, default: false
    end
  end

  def rollback
    drop table_for(Note)
  end
end
