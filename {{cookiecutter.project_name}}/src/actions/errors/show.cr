class Errors::Show < Lucky::ErrorAction
  DEFAULT_MESSAGE = "Something went wrong."
  default_format :json
  dont_report [Lucky::RouteNotFoundError, Avram::RecordNotFoundError]

  def render(error : Lucky::RouteNotFoundError | Avram::RecordNotFoundError)
    error_json "Not found", status: 404
  end

  def render(error : Lucky::RenderableError)
    error_json error.renderable_message, status: error.renderable_status
  end

  # Lucky 1.5 makes this abstract (Lucky::ErrorAction in luckyframework/lucky
  # v1.5.0, src/lucky/error_action.cr): the answer when no `render` matched.
  def default_render(error : Exception) : Lucky::Response
    error_json DEFAULT_MESSAGE, status: 500
  end

  private def error_json(message : String, status : Int)
    json ErrorSerializer.new(message: message), status: status
  end

  private def report(error : Exception) : Nil
    # Send errors to an error tracker here.
  end
end
