using NatKit.Nat;
using NatKit.PortMapping.NatPmp;

namespace NatKit.PortMapping;

/// <summary>NAT-PMP (RFC 6886) requests.</summary>
public sealed partial class PortMappingHandler
{
    private int HandleNatPmp(ReadOnlySpan<byte> bytes, NatEndpoint source, long now, Span<byte> reply)
    {
        var epoch = EpochSeconds(now);
        if (!NatPmpRequest.TryParse(bytes, out var request)) return 0; // a mapping request cut short: no fields to answer with
        if (request.Opcode == (byte)NatPmpOpcode.ExternalAddress)
        {
            return NatPmpResponse.WriteExternalAddress(reply, NatPmpResult.Success, epoch, ExternalAddress);
        }

        if (!request.IsMapping)
        {
            return NatPmpResponse.WriteHeader(reply, request.Opcode, NatPmpResult.UnsupportedOpcode, epoch); // section 3.5
        }

        var opcode = (NatPmpOpcode)request.Opcode;
        var protocol = NatPmpRequest.ProtocolOf(opcode);
        var internalPort = request.InternalPort;
        if (request.RequestedLifetime == 0)
        {
            // Section 3.4: lifetime 0 deletes; internal port 0 (with external port 0) deletes all of the host's.
            if (internalPort == 0) DeleteAll(source.Address, protocol, nonce: null, now);
            else Delete(protocol, new NatEndpoint(source.Address, internalPort), nonce: null, now);
            _deleted++;
            return NatPmpResponse.WriteMapping(reply, opcode, NatPmpResult.Success, epoch, internalPort, 0, 0);
        }

        if (internalPort == 0)
        {
            return NatPmpResponse.WriteMapping(reply, opcode, NatPmpResult.NotAuthorized, epoch, internalPort, 0, 0);
        }

        var policy = _table.Policy;
        var lifetime = TimeSpan.FromSeconds(request.RequestedLifetime);
        if (lifetime > policy.PortMappingMaxLifetime) lifetime = policy.PortMappingMaxLifetime;
        var endpoint = new NatEndpoint(source.Address, internalPort);
        var result = _table.Map(new MappingRequest(protocol, endpoint, request.SuggestedExternalPort, lifetime), now);
        if (!result.Succeeded)
        {
            var code = result.Status is MappingStatus.NoResources or MappingStatus.QuotaExceeded
                ? NatPmpResult.OutOfResources
                : NatPmpResult.NotAuthorized;
            return NatPmpResponse.WriteMapping(reply, opcode, code, epoch, internalPort, 0, 0);
        }

        _granted++;
        Own(protocol, endpoint, nonce: null, result.Status);
        return NatPmpResponse.WriteMapping(reply, opcode, NatPmpResult.Success, epoch, internalPort, result.Mapping.External.Port,
            result.Mapping.SecondsLeft(now));
    }
}
