"""The deep hybrid model: training data in Spark, the network, Horovod training, pyfunc, scoring."""
