"""Events that are not typed commands: scheduled jobs now; button actions and monitoring
alerts join here."""
