# Container images of the deployment (deploy/Dockerfile). The root Makefile includes this file.
#   make images                   build the app, dagster and bot images for STACK (default dev)
#   make bot-image                only the bot image (target bot, entrypoint `tradai run-bot`)
#   make push-images              log in to ECR, build, push; prints the pulumi command that deploys them
# Needs Docker with BuildKit. Without AWS credentials, name the registry: make images ECR_REGISTRY=local
STACK ?= dev
AWS_REGION ?= us-east-1
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unversioned)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
ECR_REGISTRY ?= $(shell aws sts get-caller-identity --query Account --output text).dkr.ecr.$(AWS_REGION).amazonaws.com
APP_IMAGE = $(ECR_REGISTRY)/tradai-app-$(STACK):$(IMAGE_TAG)
DAGSTER_IMAGE = $(ECR_REGISTRY)/tradai-dagster-$(STACK):$(IMAGE_TAG)
BOT_IMAGE = $(ECR_REGISTRY)/tradai-bot-$(STACK):$(IMAGE_TAG)
IMAGE_BUILD = DOCKER_BUILDKIT=1 docker build --platform linux/amd64 -f deploy/Dockerfile

.PHONY: images bot-image push-images docker-available

docker-available:
	@docker info >/dev/null 2>&1 || { echo "make images needs a running Docker engine (docker info failed)" >&2; exit 1; }

images: docker-available
	$(IMAGE_BUILD) --target app --build-arg DAGSTER_CURRENT_IMAGE=$(APP_IMAGE) -t $(APP_IMAGE) .
	$(IMAGE_BUILD) --target dagster -t $(DAGSTER_IMAGE) .
	$(IMAGE_BUILD) --target bot -t $(BOT_IMAGE) .

bot-image: docker-available
	$(IMAGE_BUILD) --target bot -t $(BOT_IMAGE) .

push-images: images
	aws ecr get-login-password --region $(AWS_REGION) | docker login --username AWS --password-stdin $(ECR_REGISTRY)
	docker push $(APP_IMAGE)
	docker push $(DAGSTER_IMAGE)
	docker push $(BOT_IMAGE)
	@echo "Pushed $(IMAGE_TAG). Deploy: cd infra && pulumi config set tradai:imageTag $(IMAGE_TAG) --stack $(STACK) && pulumi up --stack $(STACK)"
