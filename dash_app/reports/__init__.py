"""Reports that arrive by themselves: the reports file, when each is due, what it says, and the thread that sends it."""
