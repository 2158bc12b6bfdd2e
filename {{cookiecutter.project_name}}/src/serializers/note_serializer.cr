class NoteSerializer < BaseSerializer
  def initialize(@note : Note)
  end

  def render
    {id: @note.id, title: @note.title, body: @note.body, published: @note.published}
  end
end
