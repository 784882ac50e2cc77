using System.Buffers.Binary;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.PortMapping;

/// <summary>A PCP mapping nonce (RFC 6887 section 11.1): 96 bits that prove a client owns its mapping.</summary>
public readonly record struct PcpNonce(ulong High, uint Low)
{
    public static PcpNonce Read(ReadOnlySpan<byte> nonce) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(nonce), BinaryPrimitives.ReadUInt32BigEndian(nonce[8..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, High);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], Low);
    }
}

/// <summary>Who owns which explicit mapping: the PCP nonce it was made with (none for NAT-PMP and UPnP).</summary>
public sealed partial class PortMappingHandler
{
    /// <summary>Most ownership records kept; past it, records of mappings that are gone are dropped.</summary>
    private const int OwnerPruneAt = 4096;

    private readonly Dictionary<(IpProtocol, NatEndpoint), PcpNonce?> _owners = [];

    /// <summary>Records the owner of a mapping just granted. A refresh keeps the first owner's nonce unless it had none.</summary>
    private void Own(IpProtocol protocol, NatEndpoint endpoint, PcpNonce? nonce, MappingStatus status)
    {
        if (status == MappingStatus.Refreshed && _owners.TryGetValue((protocol, endpoint), out var old) && old is not null) return;
        if (_owners.Count >= OwnerPruneAt) PruneOwners();
        _owners[(protocol, endpoint)] = nonce;
    }

    /// <summary>May a request carrying <paramref name="nonce"/> (null: NAT-PMP, which proves ownership by source
    /// address alone) change the live mapping of <paramref name="endpoint"/>?</summary>
    private bool MayChange(IpProtocol protocol, NatEndpoint endpoint, PcpNonce? nonce, long now) =>
        nonce is null
        || !_table.TryGetMapping(protocol, endpoint, now, out _)
        || !_owners.TryGetValue((protocol, endpoint), out var owner)
        || owner is null
        || owner == nonce;

    /// <summary>Deletes one mapping when the nonce allows; false when it belongs to another nonce.</summary>
    private bool Delete(IpProtocol protocol, NatEndpoint endpoint, PcpNonce? nonce, long now)
    {
        if (!MayChange(protocol, endpoint, nonce, now)) return false;
        _table.Unmap(protocol, endpoint, now);
        _owners.Remove((protocol, endpoint));
        return true;
    }

    /// <summary>Deletes every mapping of <paramref name="host"/> for <paramref name="protocol"/> that the nonce may
    /// change (RFC 6886 section 3.4, RFC 6887 section 15).</summary>
    private void DeleteAll(Ipv4Address host, IpProtocol protocol, PcpNonce? nonce, long now)
    {
        foreach (var m in _table.ListMappings(now))
        {
            if (m.Internal.Address == host && m.Protocol == protocol) Delete(protocol, m.Internal, nonce, now);
        }
    }

    private void PruneOwners()
    {
        var stale = new List<(IpProtocol, NatEndpoint)>();
        foreach (var key in _owners.Keys)
        {
            if (!_table.TryGetMapping(key.Item1, key.Item2, long.MinValue, out _)) stale.Add(key);
        }

        foreach (var key in stale) _owners.Remove(key);
    }
}
