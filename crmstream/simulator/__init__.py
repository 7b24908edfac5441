"""A seedable simulator of a bank's customers, producing the four input topics.

`simulate(config)` is a pure generator of `SimEvent`s (no I/O); `producer.produce` sends
them to Kafka and `command.simulate_command` is the `crmstream simulate` command. What
the run planted (churners, fraud episodes, hidden needs) is collected by `GroundTruth`;
`acceptance_chance` (with `leaving_on`) is the chance with which a customer accepts an
offer, so an offer policy can be scored against the truth.
"""

from crmstream.simulator.behaviour import acceptance_chance, leaving_on
from crmstream.simulator.config import KINDS, SimEvent, SimulationConfig
from crmstream.simulator.stream import simulate
from crmstream.simulator.truth import GroundTruth, read_ground_truth

__all__ = [
    "KINDS",
    "GroundTruth",
    "SimEvent",
    "SimulationConfig",
    "acceptance_chance",
    "leaving_on",
    "read_ground_truth",
    "simulate",
]
