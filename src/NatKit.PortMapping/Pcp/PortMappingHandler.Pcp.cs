using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping;

/// <summary>PCP (RFC 6887) requests: ANNOUNCE, MAP and PEER.</summary>
public sealed partial class PortMappingHandler
{
    /// <summary>Section 7.2: how long a client should take an error to last, for errors that need a change on the
    /// server or in the request (30 minutes) and for those that may pass (30 s).</summary>
    private const uint LongErrorLifetime = 1800;
    private const uint ShortErrorLifetime = 30;

    private int HandlePcp(ReadOnlySpan<byte> bytes, NatEndpoint source, long now, Span<byte> reply)
    {
        var epoch = EpochSeconds(now);
        if (!PcpRequest.TryParse(bytes, out var request)) return 0;
        var check = PcpRequestValidation.Check(request);
        if (check is null) return 0;
        if (check != PcpResult.Success) return PcpError(reply, request, check.Value, epoch);
        if (Pcp.Pcp.Unmapped(request.ClientAddress) != source.Address) return PcpError(reply, request, PcpResult.AddressMismatch, epoch);
        switch ((PcpOpcode)request.Opcode)
        {
            case PcpOpcode.Announce:
                // Section 14.1: no options apply; an unknown mandatory one still refuses the request.
                var options = request.Options;
                while (options.TryReadNext(out var code, out _))
                {
                    if (code < 128) return PcpError(reply, request, PcpResult.UnsupportedOption, epoch);
                }

                if (options.IsMalformed) return PcpError(reply, request, PcpResult.MalformedOption, epoch);
                return PcpResponse.WriteHeader(reply, (byte)PcpOpcode.Announce, PcpResult.Success, 0, epoch);
            case PcpOpcode.Map:
                return HandleMap(request, source, now, epoch, reply);
            case PcpOpcode.Peer:
                return HandlePeer(request, source, now, epoch, reply);
            default:
                return PcpError(reply, request, PcpResult.UnsupportedOpcode, epoch);
        }
    }

    private int HandleMap(in PcpRequest request, NatEndpoint source, long now, uint epoch, Span<byte> reply)
    {
        request.TryGetMap(out var map); // Check made sure the 36 bytes are there
        var policy = _table.Policy;

        // Section 13: THIRD_PARTY at most once, PREFER_FAILURE at most once, FILTER any number of times.
        Ipv4Address? thirdParty = null;
        var preferFailure = false;
        List<MappingFilter>? filters = null;
        var clearFilters = false;
        var options = request.Options;
        while (options.TryReadNext(out var code, out var data))
        {
            switch ((PcpOptionCode)code)
            {
                case PcpOptionCode.ThirdParty:
                    if (ReadThirdParty(data, ref thirdParty) is { } bad) return PcpError(reply, request, bad, epoch);
                    break;
                case PcpOptionCode.PreferFailure:
                    if (preferFailure || data.Length != 0) return PcpError(reply, request, PcpResult.MalformedOption, epoch);
                    preferFailure = true;
                    break;
                case PcpOptionCode.Filter:
                    if (data.Length != Pcp.Pcp.FilterLength) return PcpError(reply, request, PcpResult.MalformedOption, epoch);
                    var prefixLength = data[1];
                    var remote = Ipv6Address.Read(data[4..]);
                    if (prefixLength == 0)
                    {
                        clearFilters = true; // section 13.3: prefix length 0 removes the filters
                        break;
                    }

                    // An IPv4 filter is written as a mapped address with a prefix length of 96 + the IPv4 one.
                    if (Pcp.Pcp.Unmapped(remote) is not { } v4 || prefixLength is < 96 or > 128) return PcpError(reply, request, PcpResult.MalformedOption, epoch);
                    (filters ??= []).Add(new MappingFilter(new Ipv4Prefix(v4, prefixLength - 96), (ushort)((data[2] << 8) | data[3])));
                    break;
                default:
                    if (code < 128) return PcpError(reply, request, PcpResult.UnsupportedOption, epoch); // mandatory, unknown
                    break;
            }
        }

        if (options.IsMalformed) return PcpError(reply, request, PcpResult.MalformedOption, epoch);
        if (clearFilters) filters = null;

        if (!MayMapFor(thirdParty)) return PcpError(reply, request, PcpResult.NotAuthorized, epoch);
        var host = thirdParty ?? source.Address;

        var nonce = PcpNonce.Read(map.Nonce);
        var lifetime = request.Lifetime;
        IpProtocol protocol;
        switch (map.Protocol)
        {
            case (byte)IpProtocol.Udp or (byte)IpProtocol.Tcp:
                protocol = (IpProtocol)map.Protocol;
                break;
            case 0 when lifetime == 0 && map.InternalPort == 0:
                // Section 15: protocol 0 and internal port 0 with lifetime 0 deletes all the nonce's mappings.
                DeleteAll(host, IpProtocol.Udp, nonce, now);
                DeleteAll(host, IpProtocol.Tcp, nonce, now);
                _deleted++;
                return MapAnswer(reply, request, PcpResult.Success, 0, epoch, map.ExternalPort, map.ExternalAddress);
            default:
                return PcpError(reply, request, PcpResult.UnsupportedProtocol, epoch);
        }

        var endpoint = new NatEndpoint(host, map.InternalPort);
        if (lifetime == 0)
        {
            // Section 15: delete. Internal port 0 means all of the host's mappings of the protocol with this nonce.
            if (map.InternalPort == 0) DeleteAll(host, protocol, nonce, now);
            else if (!Delete(protocol, endpoint, nonce, now)) return PcpError(reply, request, PcpResult.NotAuthorized, epoch);
            _deleted++;
            return MapAnswer(reply, request, PcpResult.Success, 0, epoch, map.ExternalPort, map.ExternalAddress);
        }

        if (map.InternalPort == 0) return PcpError(reply, request, PcpResult.MalformedRequest, epoch); // section 11.1
        if (!MayChange(protocol, endpoint, nonce, now)) return PcpError(reply, request, PcpResult.NotAuthorized, epoch);

        // Section 11.3: a suggested external address the NAT does not have is a hint it cannot follow.
        Ipv4Address? wantedAddress = null;
        if (Pcp.Pcp.Unmapped(map.ExternalAddress) is { } suggested && suggested != Ipv4Address.Any)
        {
            if (Contains(_table.ExternalAddresses, suggested)) wantedAddress = suggested;
            else if (preferFailure) return PcpError(reply, request, PcpResult.CannotProvideExternal, epoch);
        }

        var granted = Lifetime(lifetime);
        var result = _table.Map(new MappingRequest(protocol, endpoint, map.ExternalPort, granted)
        {
            RequireExternalPort = preferFailure,
            ExternalAddress = wantedAddress,
            Filters = filters,
        }, now);
        if (!result.Succeeded) return PcpError(reply, request, ResultOf(result.Status), epoch);

        _granted++;
        Own(protocol, endpoint, nonce, result.Status);
        return MapAnswer(reply, request, PcpResult.Success, result.Mapping.SecondsLeft(now), epoch, result.Mapping.External.Port,
            Pcp.Pcp.Mapped(result.Mapping.External.Address));
    }

    /// <summary>Section 13.1: THIRD_PARTY at most once, 16 bytes, an IPv4 (mapped) address. Null when taken, else
    /// the error to answer with.</summary>
    private static PcpResult? ReadThirdParty(ReadOnlySpan<byte> data, ref Ipv4Address? thirdParty)
    {
        if (thirdParty is not null || data.Length != Pcp.Pcp.ThirdPartyLength) return PcpResult.MalformedOption;
        if (Pcp.Pcp.Unmapped(Ipv6Address.Read(data)) is not { } other) return PcpResult.UnsupportedProtocol;
        thirdParty = other;
        return null;
    }

    /// <summary>Section 13.1: a host maps for another only when the operator allows it, and only for an inside host.</summary>
    private bool MayMapFor(Ipv4Address? thirdParty) =>
        thirdParty is not { } other || (_table.Policy.AllowThirdPartyMappings && _table.IsInside(other));

    /// <summary>
    /// Section 12: PEER makes (or finds) the outbound mapping of the internal endpoint toward the remote peer, as the
    /// first packet to it would, and keeps it at least the lifetime asked (raised to the minimum, cut to the maximum;
    /// 0 hands it back to its idle timer). The answer carries the external endpoint; the suggested one is a hint the
    /// engine's port assignment does not take (an existing mapping keeps its port, section 12.3). THIRD_PARTY as
    /// for MAP; FILTER and PREFER_FAILURE are MAP's (section 7.3), so a PEER carrying them gets UNSUPP_OPTION.
    /// </summary>
    private int HandlePeer(in PcpRequest request, NatEndpoint source, long now, uint epoch, Span<byte> reply)
    {
        request.TryGetPeer(out var peer); // Check made sure the 56 bytes are there
        var map = peer.Map;
        Ipv4Address? thirdParty = null;
        var options = request.Options;
        while (options.TryReadNext(out var code, out var data))
        {
            if (code == (byte)PcpOptionCode.ThirdParty)
            {
                if (ReadThirdParty(data, ref thirdParty) is { } bad) return PcpError(reply, request, bad, epoch);
            }
            else if (code < 128)
            {
                return PcpError(reply, request, PcpResult.UnsupportedOption, epoch);
            }
        }

        if (options.IsMalformed) return PcpError(reply, request, PcpResult.MalformedOption, epoch);
        if (!MayMapFor(thirdParty)) return PcpError(reply, request, PcpResult.NotAuthorized, epoch);
        if (map.Protocol is not ((byte)IpProtocol.Udp or (byte)IpProtocol.Tcp)) return PcpError(reply, request, PcpResult.UnsupportedProtocol, epoch);
        if (Pcp.Pcp.Unmapped(peer.RemoteAddress) is not { } remoteAddress) return PcpError(reply, request, PcpResult.UnsupportedProtocol, epoch);
        if (map.InternalPort == 0 || peer.RemotePort == 0) return PcpError(reply, request, PcpResult.MalformedRequest, epoch);

        var result = _table.MapPeer((IpProtocol)map.Protocol, new NatEndpoint(thirdParty ?? source.Address, map.InternalPort),
            new NatEndpoint(remoteAddress, peer.RemotePort), Lifetime(request.Lifetime), now);
        if (!result.Succeeded) return PcpError(reply, request, ResultOf(result.Status), epoch);

        if (request.Lifetime == 0) _deleted++;
        else _granted++;
        var external = result.Mapping.External;
        var n = PcpResponse.WriteHeader(reply, (byte)PcpOpcode.Peer, PcpResult.Success,
            request.Lifetime == 0 ? 0 : result.Mapping.SecondsLeft(now), epoch);
        n += PcpPeerData.Write(reply[n..], map.Nonce, map.Protocol, map.InternalPort, external.Port, Pcp.Pcp.Mapped(external.Address),
            peer.RemotePort, peer.RemoteAddress);
        options = request.Options;
        while (options.TryReadNext(out var code, out var data))
        {
            if (code == (byte)PcpOptionCode.ThirdParty) n += PcpOptionReader.Write(reply[n..], PcpOptionCode.ThirdParty, data);
        }

        return n;
    }

    /// <summary>Section 15: a lifetime asked for, raised to the policy's minimum and cut to its maximum; 0 stays 0.</summary>
    private TimeSpan Lifetime(uint seconds)
    {
        var policy = _table.Policy;
        var lifetime = TimeSpan.FromSeconds(seconds);
        if (seconds > 0 && lifetime < policy.PortMappingMinLifetime) lifetime = policy.PortMappingMinLifetime;
        return lifetime > policy.PortMappingMaxLifetime ? policy.PortMappingMaxLifetime : lifetime;
    }

    /// <summary>The PCP result for a mapping table's refusal (section 7.4).</summary>
    private static PcpResult ResultOf(MappingStatus status) => status switch
    {
        MappingStatus.QuotaExceeded => PcpResult.UserExceededQuota,
        MappingStatus.NoResources => PcpResult.NoResources,
        MappingStatus.PortUnavailable => PcpResult.CannotProvideExternal,
        MappingStatus.TooManyFilters => PcpResult.ExcessiveRemotePeers,
        MappingStatus.UnsupportedProtocol => PcpResult.UnsupportedProtocol,
        MappingStatus.BadRemote => PcpResult.MalformedRequest,
        _ => PcpResult.NotAuthorized,
    };

    private static bool Contains(IReadOnlyList<Ipv4Address> list, Ipv4Address address)
    {
        foreach (var a in list)
        {
            if (a == address) return true;
        }

        return false;
    }

    /// <summary>A MAP answer: the header, the request's MAP data with the assigned external endpoint, and the options
    /// the server understood echoed back (section 7.3).</summary>
    private int MapAnswer(Span<byte> reply, in PcpRequest request, PcpResult result, uint lifetime, uint epoch, ushort externalPort,
        Ipv6Address externalAddress)
    {
        request.TryGetMap(out var map);
        var n = PcpResponse.WriteHeader(reply, (byte)PcpOpcode.Map, result, lifetime, epoch);
        n += PcpMapData.Write(reply[n..], map.Nonce, map.Protocol, map.InternalPort, externalPort, externalAddress);
        var options = request.Options;
        while (options.TryReadNext(out var code, out var data))
        {
            if (code is (byte)PcpOptionCode.ThirdParty or (byte)PcpOptionCode.PreferFailure or (byte)PcpOptionCode.Filter)
            {
                n += PcpOptionReader.Write(reply[n..], (PcpOptionCode)code, data);
            }
        }

        return n;
    }

    /// <summary>An error answer (section 7.2): the header, with the request's opcode data copied when it has it.</summary>
    private int PcpError(Span<byte> reply, in PcpRequest request, PcpResult result, uint epoch)
    {
        var lifetime = result is PcpResult.NetworkFailure or PcpResult.NoResources or PcpResult.UserExceededQuota
            or PcpResult.CannotProvideExternal or PcpResult.ExcessiveRemotePeers ? ShortErrorLifetime : LongErrorLifetime;
        var b = request.Buffer;
        var opcode = (byte)(b[1] & 0x7F);
        var n = PcpResponse.WriteHeader(reply, opcode, result, lifetime, epoch);
        var dataLength = request.OpcodeDataLength;
        if (result != PcpResult.UnsupportedVersion && dataLength > 0 && b.Length >= Pcp.Pcp.HeaderLength + dataLength)
        {
            b.Slice(Pcp.Pcp.HeaderLength, dataLength).CopyTo(reply[n..]);
            n += dataLength;
        }

        return n;
    }
}
