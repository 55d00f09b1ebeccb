"""Customs' real-time payment-data check (公告2018年第179号): sample, ask, receive, compare."""
