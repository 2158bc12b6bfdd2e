class Api::Notes::Index < ApiAction
  get "/api/notes" do
    json NoteSerializer.for_collection(NoteQuery.new.published(true).created_at.desc_order)
  end
end
