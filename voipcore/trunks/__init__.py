"""Trunks to the phone network: Twilio Elastic SIP Trunking.

Termination (voipcore to the PSTN) sends ``INVITE sip:+E164@<name>.pstn.twilio.com`` and answers
Twilio's digest challenge with the credentials of a Credential List on the trunk; origination
(the PSTN to voipcore) arrives from Twilio at the trunk's Origination URL for the numbers
associated with the trunk. :mod:`voipcore.trunks.provisioning` sets that up through Twilio's
REST API.
"""
