"""Run time: engines that execute a built graph behind one small interface."""

from tei_ort.engines.base import Engine, EngineInputs, OutputName

__all__ = ["Engine", "EngineInputs", "OutputName"]
