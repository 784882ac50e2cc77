using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NatKit.Stun.Discovery;

/// <summary>Mapping behaviour (RFC 4787 section 4.1, tested per RFC 5780 section 4.3).</summary>
public enum NatMapping
{
    /// <summary>Not determined (no response, or the server has no OTHER-ADDRESS).</summary>
    Unknown,

    /// <summary>No NAT: the mapped address is our own (a firewall may still filter).</summary>
    NoNat,

    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

/// <summary>Filtering behaviour (RFC 4787 section 5, tested per RFC 5780 section 4.4).</summary>
public enum NatFiltering
{
    Unknown,
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

/// <summary>
/// What RFC 5780 behaviour discovery found. Nullable fields were not measured (switched off, or a test they
/// depend on failed); <see cref="Notes"/> says why.
/// </summary>
public sealed record NatBehavior
{
    /// <summary>The server's primary endpoint that was probed.</summary>
    public required IPEndPoint Server { get; init; }

    /// <summary>False when no Binding response came at all (UDP blocked, or the server is down).</summary>
    public bool Reachable { get; init; }

    /// <summary>True when the server returned OTHER-ADDRESS, so the RFC 5780 tests could run.</summary>
    public bool ServerSupportsRfc5780 { get; init; }

    public IPEndPoint? LocalEndPoint { get; init; }

    /// <summary>Our address as the server saw it (test I).</summary>
    public IPEndPoint? MappedEndPoint { get; init; }

    public NatMapping Mapping { get; init; }

    public NatFiltering Filtering { get; init; }

    /// <summary>True when a packet to our own mapped address came back to us (RFC 4787 REQ-9).</summary>
    public bool? Hairpinning { get; init; }

    /// <summary>True when the mapped port equals the local port (RFC 4787 section 4.2.1).</summary>
    public bool? PortPreserved { get; init; }

    /// <summary>How long an idle UDP mapping survived (binary search; RFC 5780 section 4.6), when measured.</summary>
    public TimeSpan? BindingLifetime { get; init; }

    /// <summary>True when the mapping outlived the longest wait tried (then <see cref="BindingLifetime"/> is
    /// that wait, a lower bound).</summary>
    public bool BindingLifetimeIsLowerBound { get; init; }

    public IReadOnlyList<string> Notes { get; init; } = [];

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower), new EndPointConverter() },
    };

    /// <summary>The record as JSON (camelCase fields, kebab-case enums, endpoints as "address:port", lifetime
    /// in seconds).</summary>
    public string ToJson() => JsonSerializer.Serialize(new
    {
        server = Server,
        reachable = Reachable,
        serverSupportsRfc5780 = ServerSupportsRfc5780,
        localEndPoint = LocalEndPoint,
        mappedEndPoint = MappedEndPoint,
        mapping = Mapping,
        filtering = Filtering,
        hairpinning = Hairpinning,
        portPreserved = PortPreserved,
        bindingLifetimeSeconds = BindingLifetime?.TotalSeconds,
        bindingLifetimeIsLowerBound = BindingLifetimeIsLowerBound,
        notes = Notes,
    }, JsonOptions);

    /// <summary>RFC 4787 short names: EIM, ADM, APDM; EIF, ADF, APDF.</summary>
    public static string ShortName(NatMapping mapping) => mapping switch
    {
        NatMapping.NoNat => "none",
        NatMapping.EndpointIndependent => "EIM",
        NatMapping.AddressDependent => "ADM",
        NatMapping.AddressAndPortDependent => "APDM",
        _ => "unknown",
    };

    public static string ShortName(NatFiltering filtering) => filtering switch
    {
        NatFiltering.EndpointIndependent => "EIF",
        NatFiltering.AddressDependent => "ADF",
        NatFiltering.AddressAndPortDependent => "APDF",
        _ => "unknown",
    };

    private sealed class EndPointConverter : JsonConverter<IPEndPoint>
    {
        public override IPEndPoint? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            IPEndPoint.Parse(reader.GetString()!);

        public override void Write(Utf8JsonWriter writer, IPEndPoint value, JsonSerializerOptions options) =>
            writer.WriteStringValue(value.ToString());
    }
}
