"""node.contracts"""
