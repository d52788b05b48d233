"""Command-line tools (console_scripts ecmnet-predict, ecmnet-export, ecmnet-flops): argparse and
main() over library calls; common.py holds the one-line-error wrapper every tool uses. Nothing
in ecmnet_core imports a CLI module.
"""
