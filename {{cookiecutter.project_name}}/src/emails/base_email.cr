abstract class BaseEmail < Carbon::Email
end
