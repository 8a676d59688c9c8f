"""The steps a request goes through between parsing and the router call, one module each."""
