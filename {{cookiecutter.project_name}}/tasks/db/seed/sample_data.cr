# Example rows for development, visible through Lucky and Hasura alike.
class Db::Seed::SampleData < LuckyTask::Task
  summary "Add sample database records helpful for development"

  SAMPLE_NOTES = [
    {title: "Welcome to LHD", body: "Lucky handles the logic.", published: true},
    {title: "GraphQL too", body: "Hasura serves this table at /v1/graphql.", published: true},
    {title: "A draft", body: "Not published yet.", published: false},
  ]

  def call
    SAMPLE_NOTES.each do |note|
      next if NoteQuery.new.title(note[:title]).any?
      SaveNote.create!(title: note[:title], body: note[:body], published: note[:published])
    end
    puts "Done adding sample data"
  end
end
