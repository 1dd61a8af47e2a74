"""Errors about Label Studio, shared by the server manager and the API client."""


class LabelStudioError(RuntimeError):
    """Label Studio could not be installed, started or reached, or answered unexpectedly."""


class LabelStudioUnavailable(LabelStudioError):
    """Nothing answers at the configured URL (server down, wrong FIC_LABEL_STUDIO_URL)."""


class LabelStudioAuthError(LabelStudioError):
    """Label Studio answered but refused the API token (FIC_LABEL_STUDIO_TOKEN)."""
