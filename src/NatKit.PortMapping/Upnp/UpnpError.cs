namespace NatKit.PortMapping.Upnp;

/// <summary>UPnP control errors (UDA 2.0 section 3.2.2 and WANIPConnection:2 section 2.4): the errorCode of a SOAP
/// fault's UPnPError.</summary>
public enum UpnpError
{
    /// <summary>No error.</summary>
    None = 0,

    /// <summary>No action by that name in this service.</summary>
    InvalidAction = 401,

    /// <summary>Missing, extra or malformed arguments.</summary>
    InvalidArgs = 402,

    /// <summary>The action failed for a reason of the device's.</summary>
    ActionFailed = 501,

    /// <summary>An argument's value is not valid.</summary>
    ArgumentValueInvalid = 600,

    /// <summary>An argument's value is out of range.</summary>
    ArgumentValueOutOfRange = 601,

    /// <summary>The control point may not do this (mapping for another host, from outside).</summary>
    ActionNotAuthorized = 606,

    /// <summary>GetGenericPortMappingEntry: the index is past the end.</summary>
    SpecifiedArrayIndexInvalid = 713,

    /// <summary>No such mapping.</summary>
    NoSuchEntryInArray = 714,

    /// <summary>The remote host may not be a wildcard.</summary>
    WildCardNotPermittedInSrcIp = 715,

    /// <summary>The external port may not be a wildcard (0): use AddAnyPortMapping.</summary>
    WildCardNotPermittedInExtPort = 716,

    /// <summary>The external port is mapped to another internal endpoint.</summary>
    ConflictInMappingEntry = 718,

    /// <summary>The external and internal ports must be the same.</summary>
    SamePortValuesRequired = 724,

    /// <summary>Only permanent leases (0) are supported.</summary>
    OnlyPermanentLeasesSupported = 725,

    /// <summary>Only a wildcard remote host is supported.</summary>
    RemoteHostOnlySupportsWildcard = 726,

    /// <summary>Only a wildcard external port is supported.</summary>
    ExternalPortOnlySupportsWildcard = 727,

    /// <summary>No external port is free, or the host's quota is used up.</summary>
    NoPortMapsAvailable = 728,

    /// <summary>Another mechanism holds that mapping (a static forward, another protocol).</summary>
    ConflictWithOtherMechanisms = 729,

    /// <summary>The internal port may not be a wildcard (0).</summary>
    WildCardNotPermittedInIntPort = 732,
}

/// <summary>The names the specifications give the errors (a fault's errorDescription).</summary>
public static class UpnpErrors
{
    /// <summary>The specification's name for <paramref name="error"/> (its enum name for the others).</summary>
    public static string Description(UpnpError error) => error switch
    {
        UpnpError.InvalidAction => "Invalid Action",
        UpnpError.InvalidArgs => "Invalid Args",
        UpnpError.ActionFailed => "Action Failed",
        UpnpError.ArgumentValueInvalid => "Argument Value Invalid",
        UpnpError.ArgumentValueOutOfRange => "Argument Value Out of Range",
        UpnpError.ActionNotAuthorized => "Action not authorized",
        UpnpError.WildCardNotPermittedInSrcIp => "WildCardNotPermittedInSrcIP",
        _ => error.ToString(),
    };
}
