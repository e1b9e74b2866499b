"""tracker: follows myositis clinical trials on ClinicalTrials.gov and reports every change."""

__version__ = "0.1.0"
