"""Tables: long-format grouped data, DataFrames, the jaxmle command line."""
