# pragma version ^0.4.0
# pragma evm-version cancun
"""
@title An EIP-20 token whose transfer returns nothing, as USDT's does
@notice For tests only: ``transfer`` reverts on a short balance and returns no
        value at all, so a caller that insists on decoding a bool fails on it.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

balanceOf: public(HashMap[address, uint256])
totalSupply: public(uint256)
decimals: public(uint8)
symbol: public(String[16])


@deploy
def __init__(_supply: uint256):
    self.decimals = 6
    self.symbol = "VOID"
    self.totalSupply = _supply
    self.balanceOf[msg.sender] = _supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=_supply)


@external
def transfer(_to: address, _value: uint256):
    self.balanceOf[msg.sender] -= _value
    self.balanceOf[_to] += _value
    log Transfer(sender=msg.sender, receiver=_to, value=_value)
