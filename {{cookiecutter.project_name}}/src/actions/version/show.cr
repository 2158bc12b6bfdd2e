# Used by container health checks and by script/deploy to confirm which
# commit is serving.
class Version::Show < ApiAction
  get "/version" do
    json({version: App::VERSION, built_at: App::BUILT_AT, environment: App::ENVIRONMENT})
  end
end
