class NoteQuery < Note::BaseQuery
end
