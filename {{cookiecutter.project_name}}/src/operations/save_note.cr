class SaveNote < Note::SaveOperation
  permit_columns title, body, published

  before_save do
    validate_required title
    validate_size_of title, max: 200
  end
end
