"""The one table of lifecycle actions (spec §6): for each, its label, the model's transition,
the service that takes it (and checks who may: the action's name is its permission), the
portal's form and the governance API's body. The admin and the API both read it, so a new
action is offered by both or by neither."""
from dataclasses import dataclass

from . import agreement_forms, agreements, credential_forms, credentials, disclosures, forms, services
from .api import agreement_serializers
from .api import credentials as credential_api
from .api import serializers


@dataclass(frozen=True)
class LifecycleAction:
    label: str
    transition: str | None      # the Integration transition method; None: no state change
    service: object             # lifecycle.services.integration_<action>
    form: type                  # the portal's form (reason, decision, ...)
    serializer: type | None     # the API's body; None: no body
    shows_secret: bool = False  # answers with client credentials, shown once
    applies: object = None      # for an action without transition: whether it applies to this integration now


ACTIONS = {
    "submit": LifecycleAction("Submit for review", "submit", services.integration_submit, forms.ActionForm, None),
    "review": LifecycleAction("Review", "review", services.integration_review, forms.ReviewForm, serializers.ReviewSerializer),
    "approve": LifecycleAction("Approve (sign off)", "approve", services.integration_approve, forms.ApproveForm,
                               serializers.ApproveSerializer),
    "reject": LifecycleAction("Reject", "reject", services.integration_reject, forms.RequiredReasonForm,
                              serializers.ReasonSerializer),
    "activate": LifecycleAction("Activate", "activate", services.integration_activate, forms.ActionForm, None, True),
    "restrict": LifecycleAction("Restrict to reads", "restrict", services.integration_restrict, forms.ReasonForm,
                                serializers.ReasonSerializer),
    "suspend": LifecycleAction("Suspend", "suspend", services.integration_suspend, forms.ReasonForm,
                               serializers.ReasonSerializer),
    "reinstate": LifecycleAction("Reinstate", "reinstate", services.integration_reinstate, forms.ReasonForm,
                                 serializers.ReasonSerializer),
    "deprecate": LifecycleAction("Deprecate", "deprecate", services.integration_deprecate, forms.DeprecateForm,
                                 serializers.DeprecateSerializer),
    "archive": LifecycleAction("Archive", "archive", services.integration_archive, forms.ReasonForm,
                               serializers.ReasonSerializer),
    # Credentials without downtime (issue #14 item 5): the previous one keeps working for a grace
    # period the rotator chooses (lifecycle.credentials).
    "rotate-secret": LifecycleAction("Rotate secret", None, credentials.integration_rotate_secret,
                                     credential_forms.RotateForm, credential_api.RotateSerializer, True),
    "rotate-api-key": LifecycleAction("Rotate API key", None, credentials.integration_rotate_api_key,
                                      credential_forms.RotateForm, credential_api.RotateSerializer, True,
                                      applies=lambda integration: bool(integration.api_key_hash)),
    "revoke-credential": LifecycleAction("Revoke a previous credential", None, credentials.integration_revoke_credential,
                                         credential_forms.RevokeCredentialForm, credential_api.RevokeCredentialSerializer,
                                         applies=credentials.has_previous),
    # An agreement uploaded after the sign-off is in force only once the umbrella authority
    # accepts it (issue #14 item 4; lifecycle.agreements); offered while one waits.
    "accept-agreement": LifecycleAction("Accept agreement", None, agreements.agreement_accept,
                                        agreement_forms.AcceptAgreementForm,
                                        agreement_serializers.AcceptAgreementSerializer,
                                        applies=agreements.has_pending_agreement),
    # Withhold an investigation's disclosures from the person's report (issue #13).
    "embargo": LifecycleAction("Embargo disclosures", None, disclosures.integration_embargo, forms.EmbargoForm,
                               serializers.EmbargoSerializer),
}


def take(name, *, integration, actor, body, request_id=""):
    """Take action `name` through its service, with `body` validated by the API's serializer."""
    action = ACTIONS[name]
    data = {}
    if action.serializer is not None:
        serializer = action.serializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
    return action.service(integration=integration, actor=actor, request_id=request_id, **data)
