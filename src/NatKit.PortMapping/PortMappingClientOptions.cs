using System.Net;

namespace NatKit.PortMapping;

/// <summary>Which port mapping protocol a client speaks.</summary>
public enum PortMappingProtocol
{
    /// <summary>NAT-PMP (RFC 6886).</summary>
    NatPmp,

    /// <summary>PCP (RFC 6887).</summary>
    Pcp,

    /// <summary>UPnP IGD (WANIPConnection over SOAP, found by SSDP).</summary>
    Upnp,
}

/// <summary>How a NAT-PMP or PCP client talks to its gateway.</summary>
public sealed record PortMappingClientOptions
{
    /// <summary>The first wait for an answer; it doubles after each send (RFC 6886 section 3.1 starts at 250 ms).</summary>
    public TimeSpan InitialTimeout { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How many times a request is sent before giving up (RFC 6886 sends 9 over 64 s; a user at a prompt
    /// or a traversal gathering candidates waits less: 4 sends, 3.75 s).</summary>
    public int Attempts { get; init; } = 4;

    /// <summary>The address requests are sent from, which PCP writes into every request and NAT-PMP maps; null picks the
    /// local IPv4 address closest to the gateway.</summary>
    public IPAddress? LocalAddress { get; init; }

    /// <summary>One sentence per invalid field; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (InitialTimeout <= TimeSpan.Zero || InitialTimeout > TimeSpan.FromSeconds(30)) errors.Add($"{nameof(InitialTimeout)}: {InitialTimeout} must be more than 0 and at most 30 s.");
        if (Attempts is < 1 or > 12) errors.Add($"{nameof(Attempts)}: {Attempts} must be between 1 and 12.");
        if (LocalAddress is { AddressFamily: not System.Net.Sockets.AddressFamily.InterNetwork }) errors.Add($"{nameof(LocalAddress)}: {LocalAddress} is not an IPv4 address.");
        return errors;
    }
}

/// <summary>A mapping a gateway granted.</summary>
/// <param name="Protocol">Which protocol got it.</param>
/// <param name="Transport">Udp or Tcp.</param>
/// <param name="InternalPort">The local port it maps.</param>
/// <param name="External">The external endpoint outsiders reach it on.</param>
/// <param name="Lifetime">How long the gateway keeps it unless renewed.</param>
/// <param name="Epoch">The gateway's epoch seconds when it answered.</param>
public sealed record PortMappingGrant(PortMappingProtocol Protocol, Packets.IpProtocol Transport, int InternalPort, IPEndPoint External,
    TimeSpan Lifetime, uint Epoch);

/// <summary>A gateway said no, or did not answer.</summary>
public sealed class PortMappingException(string message) : Exception(message);
