# pragma version ^0.4.0
# pragma evm-version cancun
"""
@title An EIP-20 token with the two behaviours custody must not be fooled by
@notice For tests only. While ``frozen``, ``transfer`` returns false and moves
        nothing, as EIP-20 allows ("callers MUST handle false"). With
        ``fee_bps`` above zero it takes a fee on every transfer: the recipient
        gets the rest, and the fee goes to the deployer, each with its own
        Transfer event.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

balanceOf: public(HashMap[address, uint256])
totalSupply: public(uint256)
decimals: public(uint8)
symbol: public(String[16])
frozen: public(bool)
fee_bps: public(uint256)
owner: public(address)


@deploy
def __init__(_supply: uint256, _fee_bps: uint256, _symbol: String[16]):
    assert _fee_bps < 10000, "fee of at most 99.99%"
    self.owner = msg.sender
    self.decimals = 18
    self.symbol = _symbol
    self.totalSupply = _supply
    self.fee_bps = _fee_bps
    self.balanceOf[msg.sender] = _supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=_supply)


@external
def freeze(_frozen: bool):
    assert msg.sender == self.owner, "only the owner"
    self.frozen = _frozen


@external
def transfer(_to: address, _value: uint256) -> bool:
    if self.frozen or self.balanceOf[msg.sender] < _value:
        return False
    fee: uint256 = _value * self.fee_bps // 10000
    self.balanceOf[msg.sender] -= _value
    self.balanceOf[_to] += _value - fee
    log Transfer(sender=msg.sender, receiver=_to, value=_value - fee)
    if fee > 0:
        self.balanceOf[self.owner] += fee
        log Transfer(sender=msg.sender, receiver=self.owner, value=fee)
    return True
