"""The ops group's commands, one router per file, composed in `bot.dispatcher`."""
