require "../../../spec_helper"

describe Api::Notes::Index do
  it "lists published notes only" do
    SaveNote.create!(title: "Public", body: "yes", published: true)
    SaveNote.create!(title: "Draft", body: "no", published: false)

    response = ApiClient.exec(Api::Notes::Index)

    response.status_code.should eq(200)
    titles = JSON.parse(response.body).as_a.map(&.["title"].as_s)
    titles.should eq(["Public"])
  end
end
