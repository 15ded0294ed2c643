-- Writes are refused with a clear message.
INSERT INTO spans SELECT * FROM spans
