"""AWS: the VPC inventory (NAT Gateways, CIDRs, ENIs, flow logs) from CLI outputs or boto3 responses."""
