"""The Synapse knowledge: config in, unit specs out. No asyncio, no processes supervised here."""
