using NatKit.Stun;

namespace NatKit.Turn.Protocol;

/// <summary>The attributes a TURN agent understands: STUN's plus RFC 8656's (and RFC 6062's CONNECTION-ID).</summary>
public static class TurnRegistry
{
    public static StunAttributeRegistry Attributes { get; } = StunAttributeRegistry.Stun.With(
        TurnAttributeType.ChannelNumber, TurnAttributeType.Lifetime, TurnAttributeType.XorPeerAddress,
        TurnAttributeType.Data, TurnAttributeType.XorRelayedAddress, TurnAttributeType.RequestedAddressFamily,
        TurnAttributeType.EvenPort, TurnAttributeType.RequestedTransport, TurnAttributeType.DontFragment,
        TurnAttributeType.ReservationToken, TurnAttributeType.AdditionalAddressFamily,
        TurnAttributeType.AddressErrorCode, TurnAttributeType.Icmp);
}
