"""The checker stage: a clean re-implementation of the official MLCommons submission-checker rules.

Entry point: subtool.checker.api.check_tree; rule ids: RULES.md.
"""
