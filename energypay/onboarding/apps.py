from django.apps import AppConfig


class OnboardingConfig(AppConfig):
    name = "energypay.onboarding"
    label = "onboarding"
    verbose_name = "Onboarding"
