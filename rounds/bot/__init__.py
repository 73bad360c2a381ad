"""The running bot: wiring, transports, the HTTP server, the outbox dispatcher."""
