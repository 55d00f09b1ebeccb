"""Tools around the services: the demo-data generator and the clean-up of runs. They may import
services; no service imports them."""
