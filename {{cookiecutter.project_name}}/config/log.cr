# Log JSON to stdout everywhere: Docker collects it.
backend = Log::IOBackend.new(formatter: Lucky::PrettyLogFormatter.proc)
if LuckyEnv.production?
  backend = Log::IOBackend.new(formatter: Dexter::JSONLogFormatter.proc)
end

Log.dexter.configure(LuckyEnv.production? ? :info : :debug, backend)
DB::Log.level = :info
Avram::QueryLog.dexter.configure(LuckyEnv.production? ? :none : :info)
Avram::SaveFailedLog.dexter.configure(:warn)
Lucky::ContinuedPipeLog.dexter.configure(:none)
