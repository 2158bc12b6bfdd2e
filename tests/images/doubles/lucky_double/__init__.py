"""Contract double for the Crystal/Lucky toolchain and the Lucky app. Test code."""
