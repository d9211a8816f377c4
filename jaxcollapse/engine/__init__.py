"""The chain engine: one generation (step), the compiled program (program), simulate, Result."""
from jaxcollapse.engine.program import ChainProgram, ChainState, trace_count
from jaxcollapse.engine.result import Result
from jaxcollapse.engine.simulate import simulate

__all__ = ["ChainProgram", "ChainState", "Result", "simulate", "trace_count"]
