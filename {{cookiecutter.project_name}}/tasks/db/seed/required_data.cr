# Data the app needs in every environment. Safe to run any number of times.
class Db::Seed::RequiredData < LuckyTask::Task
  summary "Add database records required for the app to work"

  def call
    puts "Done adding required data"
  end
end
