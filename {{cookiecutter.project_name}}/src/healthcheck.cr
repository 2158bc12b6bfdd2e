# A dependency-free probe compiled into every Lucky image and used by the
# container HEALTHCHECK: exit 0 when GET /version answers 200, else 1.
require "http/client"

port = ENV["PORT"]? || "5000"
begin
  client = HTTP::Client.new("127.0.0.1", port.to_i)
  client.connect_timeout = 2.seconds
  client.read_timeout = 3.seconds
  response = client.get("/version")
  exit(response.status_code == 200 ? 0 : 1)
rescue ex
  STDERR.puts "healthcheck: #{ex.message}"
  exit 1
end
