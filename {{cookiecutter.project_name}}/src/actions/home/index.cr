class Home::Index < ApiAction
  get "/" do
    json({name: "lucky", graphql: "/v1/graphql", version: App::VERSION})
  end
end
