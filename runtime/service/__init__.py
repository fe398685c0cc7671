"""AWS-style service endpoints: request authentication and protocol shaping."""
