"""warmstart: AWS Lambda's invocation model on your own machine."""
