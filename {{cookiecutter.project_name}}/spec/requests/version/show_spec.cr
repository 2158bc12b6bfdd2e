require "../../spec_helper"

describe Version::Show do
  it "reports the running version as JSON" do
    response = ApiClient.exec(Version::Show)

    response.status_code.should eq(200)
    JSON.parse(response.body)["version"].as_s.should eq(App::VERSION)
  end
end
