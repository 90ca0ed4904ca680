"""modelrun"""
