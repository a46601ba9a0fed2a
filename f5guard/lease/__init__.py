"""The lease room: who owns a home (the heartbeat lease, epochs) and what anyone can read about the owner."""
