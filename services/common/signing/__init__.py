"""Message signatures (加签/验签): primitives (``crypto``), CEB XML-DSig (``xmldsig``) and the
179 payment-data text (``paydata``). Pure: no Kafka, Redis or gRPC."""
