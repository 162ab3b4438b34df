"""Protocol edges: make mail durable and hand it on; no parsing or policy here."""
