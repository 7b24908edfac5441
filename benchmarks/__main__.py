"""`python -m benchmarks [--quick] [--only floor,throughput,...]`."""

from benchmarks.cli import main

main()
