"""A platform's reference responder for customs' real-time payment-data check (公告2018年第179号)."""
